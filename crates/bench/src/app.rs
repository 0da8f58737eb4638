//! App API (issue #3) and Objects API (issue #4) scenarios, with their fixtures.
//!
//! App fixture: a product with `temperature` public, `things` activated things with one value
//! each, an app asking for `temperature`, and `users` app users linking `things_per_user` things
//! each (user u links things `(u * things_per_user + j) % things`). User 0 is registered and
//! links its things through the API (one real Argon2id hash); every other user, its session and
//! its links are written straight into Thingline's SQLite store through `thingline-store`'s
//! `AppUserStore` (user 0's hash reused, tokens made like the server's, stored as
//! `token_digest`), while the server runs: those users are new, so no server cache holds them.
//! Saved as `bench-app-<users>x<things_per_user>.json` in the data dir for reuse.
//!
//! Objects fixture: an app and one registered user; for `obj-get`/`obj-list` the app-shared
//! collections `BenchList` (`list_objects` objects) and `BenchGet` (the rest of `objects`) are
//! filled through `POST /v2/classes/app/{C}` with `_id` = 0, 1, 2, … (saved as
//! `bench-objects.json`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::string_field;
use crate::driver::{Req, Workload, https_client};
use crate::scenarios::{Scenario, Target, TargetKind, synthetic_tokens};
use crate::seed::KEY;

/// Collection of `obj-create` (private to the bench user).
const CREATE_COLLECTION: &str = "BenchCreate";
const GET_COLLECTION: &str = "BenchGet";
const LIST_COLLECTION: &str = "BenchList";
const OBJECTS_FILE: &str = "bench-objects.json";
/// Concurrent requests while seeding through the API.
const SEED_CONCURRENCY: usize = 64;
const USER_PASSWORD: &str = "bench-user-password-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// `GET /v2/me/resources/temperature/{thingId}?limit=1`
    Read,
    /// `POST /v2/me/resources/temperature/{thingId}`
    Write,
    /// `GET /v2/me/resources`
    MeResources,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppUserEntry {
    pub token: String,
    pub things: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppFile {
    pub app_id: String,
    pub things: usize,
    pub things_per_user: usize,
    pub users: Vec<AppUserEntry>,
}

pub struct AppScenario {
    pub kind: AppKind,
    pub users: usize,
    pub things_per_user: usize,
    pub things: usize,
}

impl AppScenario {
    fn file_name(&self) -> String {
        format!("bench-app-{}x{}.json", self.users, self.things_per_user)
    }
}

impl Scenario for AppScenario {
    fn name(&self) -> &'static str {
        match self.kind {
            AppKind::Read => "app-read",
            AppKind::Write => "app-write",
            AppKind::MeResources => "me-resources",
        }
    }

    fn params(&self) -> Value {
        json!({"users": self.users, "thingsPerUser": self.things_per_user, "things": self.things})
    }

    fn setup<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Workload>> {
        Box::pin(async move {
            let users: Vec<AppUserEntry> = match target.kind {
                TargetKind::Raw => {
                    let ids = synthetic_ids(self.things);
                    synthetic_tokens(self.users)
                        .into_iter()
                        .enumerate()
                        .map(|(u, token)| AppUserEntry {
                            token,
                            things: (0..self.things_per_user)
                                .map(|j| ids[(u * self.things_per_user + j) % self.things].clone())
                                .collect(),
                        })
                        .collect()
                }
                TargetKind::Thingline => {
                    let file = self.seed_or_reuse(target).await?;
                    self.check(target, &file).await?;
                    file.users
                }
            };
            Ok(app_workload(self.kind, &target.base_url, users))
        })
    }
}

fn app_workload(kind: AppKind, base_url: &str, users: Vec<AppUserEntry>) -> Workload {
    let users: Arc<Vec<(String, Vec<String>)>> = Arc::new(
        users
            .into_iter()
            .map(|user| {
                let urls = user.things.iter().map(|id| format!("{base_url}/v2/me/resources/{KEY}/{id}")).collect();
                (user.token, urls)
            })
            .collect(),
    );
    let me_url = format!("{base_url}/v2/me/resources");
    Workload {
        values_per_request: 1,
        generator: Arc::new(move |rng| {
            let (token, urls) = &users[rng.below(users.len())];
            let auth = Some(token.clone());
            match kind {
                AppKind::MeResources => Req { method: Method::GET, url: me_url.clone(), body: None, auth },
                AppKind::Read => {
                    let url = format!("{}?limit=1", urls[rng.below(urls.len())]);
                    Req { method: Method::GET, url, body: None, auth }
                }
                AppKind::Write => {
                    let value = 15.0 + rng.unit() * 20.0;
                    let body = format!(r#"{{"values":[{{"value":{value:.2}}}]}}"#);
                    Req { method: Method::POST, url: urls[rng.below(urls.len())].clone(), body: Some(body), auth }
                }
            }
        }),
    }
}

impl AppScenario {
    async fn seed_or_reuse(&self, target: &Target) -> Result<AppFile> {
        let name = self.file_name();
        if let Some(dir) = &target.data_dir
            && let Some(file) = load_json::<AppFile>(&dir.join(&name))?
        {
            eprintln!("{}: reusing {} users from {}", self.name(), file.users.len(), dir.join(&name).display());
            return Ok(file);
        }
        let dir = target.data_dir.as_deref().ok_or_else(|| anyhow!("app scenarios need Thingline's data dir"))?;
        let file = self.seed(target, dir).await?;
        save_json(&dir.join(&name), &file)?;
        Ok(file)
    }

    async fn seed(&self, target: &Target, dir: &Path) -> Result<AppFile> {
        if self.users == 0 || self.things_per_user == 0 || self.things == 0 {
            bail!("--users, --things-per-user and the things pool must be at least 1");
        }
        let started = Instant::now();
        let api = &target.api;
        let panel = api.login(&target.panel_email, &target.panel_password).await?;
        let provisioned = api.provision(&target.panel_email, &target.panel_password, "bench-app", self.things).await?;
        let app_id = create_app(target, &panel).await?;
        // One value per thing, so that reads answer one item.
        let things = &provisioned.things;
        futures_util::stream::iter(0..things.len())
            .map(|i| async move {
                api.write_raw(&things[i].thing_token, format!(r#"{{"values":[{{"key":"{KEY}","value":20.5}}]}}"#)).await
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        eprintln!(
            "{}: {} things activated and written in {:.1} s",
            self.name(),
            self.things,
            started.elapsed().as_secs_f64()
        );
        let thing_of = |u: usize, j: usize| &provisioned.things[(u * self.things_per_user + j) % self.things];

        // User 0 through the API.
        let email0 = "bench-user-0@example.com";
        let token0 = register(target, &app_id, email0).await?;
        let mut users = Vec::with_capacity(self.users);
        let mut links0 = Vec::new();
        for j in 0..self.things_per_user {
            let thing = thing_of(0, j);
            let answer = target
                .api
                .post_ok("/v2/me/things", Some(&token0), &json!({"thingToken": thing.thing_token}))
                .await
                .context("linking a thing")?;
            links0.push(answer.get("thingId").and_then(Value::as_str).unwrap_or(&thing.thing_id).to_string());
        }
        users.push(AppUserEntry { token: token0, things: links0 });

        // The others straight into the store.
        if self.users > 1 {
            let url = match &target.store_url {
                Some(url) => url.clone(),
                None => format!("sqlite://{}", dir.join("thingline.db").display()),
            };
            let options = thingline_store::StoreOptions { sync_full: false, read_connections: 1, ..Default::default() };
            let store = thingline_store::open(&url, &options).await.context("opening Thingline's store")?;
            let outcome = async {
                let hash = store
                    .app_user_by_email(&app_id, email0)
                    .await
                    .map_err(|e| anyhow!("reading user 0: {e}"))?
                    .ok_or_else(|| anyhow!("user 0 is not in the store"))?
                    .password_hash;
                let now = thingline_core::time::now_ms();
                let expires = now + 365 * 24 * 3600 * 1000;
                let store_started = Instant::now();
                for u in 1..self.users {
                    let user = store
                        .create_app_user(&app_id, &format!("bench-user-{u}@example.com"), &hash, now)
                        .await
                        .map_err(|e| anyhow!("creating user {u}: {e}"))?;
                    let token = thingline_core::ids::new_secret_token();
                    store
                        .create_app_session(user.id, &thingline_core::ids::token_digest(&token), expires, now)
                        .await
                        .map_err(|e| anyhow!("creating a session: {e}"))?;
                    let mut things = Vec::with_capacity(self.things_per_user);
                    for j in 0..self.things_per_user {
                        let id = &thing_of(u, j).thing_id;
                        store.link_thing(user.id, id, false, now).await.map_err(|e| anyhow!("linking: {e}"))?;
                        things.push(id.clone());
                    }
                    users.push(AppUserEntry { token, things });
                    if u % 2000 == 0 {
                        eprintln!("{}: {u}/{} users in the store", self.name(), self.users);
                    }
                }
                eprintln!(
                    "{}: {} users, sessions and {} links written to the store in {:.1} s",
                    self.name(),
                    self.users - 1,
                    (self.users - 1) * self.things_per_user,
                    store_started.elapsed().as_secs_f64()
                );
                anyhow::Ok(())
            }
            .await;
            store.close().await;
            outcome?;
        }
        eprintln!("{}: fixture ready in {:.1} s", self.name(), started.elapsed().as_secs_f64());
        Ok(AppFile { app_id, things: self.things, things_per_user: self.things_per_user, users })
    }

    /// One request of the scenario's read shape for the first and the last user.
    async fn check(&self, target: &Target, file: &AppFile) -> Result<()> {
        let client = https_client(1, Duration::from_secs(30))?;
        for user in [file.users.first(), file.users.last()].into_iter().flatten() {
            let thing = user.things.first().ok_or_else(|| anyhow!("a user without things"))?;
            let (path, expect) = match self.kind {
                AppKind::MeResources => ("/v2/me/resources".to_string(), self.things_per_user),
                _ => (format!("/v2/me/resources/{KEY}/{thing}?limit=1"), 1),
            };
            let response = client.get(target.api.url(&path)).header("Authorization", &user.token).send().await?;
            let status = response.status();
            let body: Value = response.json().await.context("check read: not JSON")?;
            let got = match self.kind {
                AppKind::MeResources => {
                    body.get(0).and_then(|r| r.get("things")).and_then(Value::as_array).map(Vec::len)
                }
                _ => body.as_array().map(Vec::len),
            };
            if !status.is_success() || got.is_none() {
                bail!("check read {path} answered {status}: {body}");
            }
            if got != Some(expect) {
                eprintln!("warning: check read {path} answered {got:?} items, expected {expect}");
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjKind {
    /// `POST /v2/classes/me/BenchCreate`
    Create,
    /// `GET /v2/classes/app/BenchGet/{id}`
    Get,
    /// `GET /v2/classes/app/BenchList?limit=100`
    List,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectsFile {
    pub app_id: String,
    pub token: String,
    pub get_objects: usize,
    pub list_objects: usize,
}

pub struct ObjScenario {
    pub kind: ObjKind,
    /// Objects stored in total (BenchGet + BenchList).
    pub objects: usize,
    pub list_objects: usize,
    pub limit: u32,
    pub seeded: std::sync::Mutex<Option<(usize, usize)>>,
}

impl Scenario for ObjScenario {
    fn name(&self) -> &'static str {
        match self.kind {
            ObjKind::Create => "obj-create",
            ObjKind::Get => "obj-get",
            ObjKind::List => "obj-list",
        }
    }

    fn params(&self) -> Value {
        let (get, list) = self
            .seeded
            .lock()
            .ok()
            .and_then(|s| *s)
            .unwrap_or((self.objects.saturating_sub(self.list_objects), self.list_objects));
        match self.kind {
            ObjKind::Create => json!({"collection": CREATE_COLLECTION}),
            _ => {
                json!({"objectsStored": get + list, "getCollection": get, "listCollection": list, "limit": self.limit})
            }
        }
    }

    fn setup<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Workload>> {
        Box::pin(async move {
            let (token, get_objects) = match (target.kind, self.kind) {
                (TargetKind::Raw, _) => {
                    (synthetic_tokens(1).remove(0), self.objects.saturating_sub(self.list_objects).max(1))
                }
                (TargetKind::Thingline, ObjKind::Create) => {
                    let panel = target.api.login(&target.panel_email, &target.panel_password).await?;
                    let _ = target.api.create_product(&panel, "bench-objects", &[KEY]).await?;
                    let app_id = create_app(target, &panel).await?;
                    (register(target, &app_id, "bench-objects@example.com").await?, 0)
                }
                (TargetKind::Thingline, _) => {
                    let file = self.seed_or_reuse(target).await?;
                    if let Ok(mut seeded) = self.seeded.lock() {
                        *seeded = Some((file.get_objects, file.list_objects));
                    }
                    self.check(target, &file).await?;
                    (file.token, file.get_objects)
                }
            };
            let base = target.base_url.clone();
            let limit = self.limit;
            let kind = self.kind;
            let create_url = format!("{base}/v2/classes/me/{CREATE_COLLECTION}");
            let list_url = format!("{base}/v2/classes/app/{LIST_COLLECTION}?limit={limit}");
            Ok(Workload {
                values_per_request: 1,
                generator: Arc::new(move |rng| {
                    let auth = Some(token.clone());
                    match kind {
                        ObjKind::Create => {
                            let n = rng.below(1_000_000);
                            let body = format!(r#"{{"name":"bench object","n":{n},"group":"g{}","ok":true}}"#, n % 10);
                            Req { method: Method::POST, url: create_url.clone(), body: Some(body), auth }
                        }
                        ObjKind::Get => {
                            let url = format!("{base}/v2/classes/app/{GET_COLLECTION}/{}", rng.below(get_objects));
                            Req { method: Method::GET, url, body: None, auth }
                        }
                        ObjKind::List => Req { method: Method::GET, url: list_url.clone(), body: None, auth },
                    }
                }),
            })
        })
    }
}

impl ObjScenario {
    async fn seed_or_reuse(&self, target: &Target) -> Result<ObjectsFile> {
        if let Some(dir) = &target.data_dir
            && let Some(file) = load_json::<ObjectsFile>(&dir.join(OBJECTS_FILE))?
        {
            eprintln!(
                "{}: reusing {} + {} objects from {}",
                self.name(),
                file.get_objects,
                file.list_objects,
                dir.join(OBJECTS_FILE).display()
            );
            return Ok(file);
        }
        let get_objects = self.objects.saturating_sub(self.list_objects);
        if get_objects == 0 || self.list_objects == 0 {
            bail!("--objects must exceed --list-objects, and both be at least 1");
        }
        let panel = target.api.login(&target.panel_email, &target.panel_password).await?;
        let _ = target.api.create_product(&panel, "bench-objects", &[KEY]).await?;
        let app_id = create_app(target, &panel).await?;
        let token = register(target, &app_id, "bench-objects@example.com").await?;
        seed_objects(target, &token, LIST_COLLECTION, self.list_objects).await?;
        seed_objects(target, &token, GET_COLLECTION, get_objects).await?;
        let file = ObjectsFile { app_id, token, get_objects, list_objects: self.list_objects };
        if let Some(dir) = &target.data_dir {
            save_json(&dir.join(OBJECTS_FILE), &file)?;
        }
        Ok(file)
    }

    async fn check(&self, target: &Target, file: &ObjectsFile) -> Result<()> {
        let (path, expect) = match self.kind {
            ObjKind::Create => return Ok(()),
            ObjKind::Get => (format!("/v2/classes/app/{GET_COLLECTION}/{}", file.get_objects - 1), 1),
            ObjKind::List => (
                format!("/v2/classes/app/{LIST_COLLECTION}?limit={}", self.limit),
                (self.limit as usize).min(file.list_objects),
            ),
        };
        let client = https_client(1, Duration::from_secs(30))?;
        let response = client.get(target.api.url(&path)).header("Authorization", &file.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await.context("check read: not JSON")?;
        let got = body.get("results").and_then(Value::as_array).map(Vec::len);
        if !status.is_success() || got.is_none() {
            bail!("check read {path} answered {status}: {body}");
        }
        if got != Some(expect) {
            eprintln!("warning: check read {path} answered {got:?} objects, expected {expect}");
        }
        Ok(())
    }
}

/// `POST /v2/classes/app/{collection}` with `_id` 0..count, `SEED_CONCURRENCY` in flight.
async fn seed_objects(target: &Target, token: &str, collection: &str, count: usize) -> Result<()> {
    let client = https_client(SEED_CONCURRENCY, Duration::from_secs(120))?;
    let url = target.api.url(&format!("/v2/classes/app/{collection}"));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let progress = {
        let done = done.clone();
        let collection = collection.to_string();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = done.load(Ordering::Relaxed);
                let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
                eprintln!("seed {collection}: {n}/{count} objects, {rate:.0}/s");
            }
        })
    };
    let result = futures_util::stream::iter(0..count)
        .map(|i| {
            let (client, url, done) = (&client, &url, &done);
            async move {
                let body = format!(r#"{{"_id":"{i}","name":"object {i}","n":{i},"group":"g{}"}}"#, i % 100);
                let response = client
                    .post(url)
                    .header("Authorization", token)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .with_context(|| format!("creating object {i}"))?;
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                // 409: already there (an interrupted seed rerun on the same data dir).
                if status != StatusCode::CREATED && status != StatusCode::CONFLICT {
                    bail!("creating object {i} answered {status}: {text}");
                }
                done.fetch_add(1, Ordering::Relaxed);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_for_each(|()| async { Ok(()) })
        .await;
    progress.abort();
    result?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("seed {collection}: {count} objects in {secs:.1} s ({:.0}/s)", count as f64 / secs.max(1e-9));
    Ok(())
}

/// `POST /v2/panel/apps` asking for `temperature` → appId.
async fn create_app(target: &Target, panel_token: &str) -> Result<String> {
    let answer = target
        .api
        .post_ok("/v2/panel/apps", Some(panel_token), &json!({"name": "bench-app", "resources": [KEY]}))
        .await
        .context("creating the app")?;
    string_field(&answer, "appId")
}

/// `POST /v2/register` → the session token.
async fn register(target: &Target, app_id: &str, email: &str) -> Result<String> {
    let answer = target
        .api
        .post_ok("/v2/register", None, &json!({"email": email, "password": USER_PASSWORD, "app": app_id}))
        .await
        .context("registering an app user")?;
    string_field(&answer, "token")
}

/// thingId-shaped ids (22 URL-safe characters) for targets that accept anything.
fn synthetic_ids(count: usize) -> Vec<String> {
    synthetic_tokens(count).into_iter().map(|t| t[..22].to_string()).collect()
}

fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).map(Some).with_context(|| format!("parsing {}", path.display()))
}

fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string(value).context("serializing a fixture")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::WorkerRng;

    #[test]
    fn app_requests_carry_the_token() {
        let users = vec![AppUserEntry { token: "tok".into(), things: vec!["t1".into()] }];
        let mut rng = WorkerRng::new(3);
        let read = (app_workload(AppKind::Read, "https://x", users.clone()).generator)(&mut rng);
        assert_eq!(read.url, "https://x/v2/me/resources/temperature/t1?limit=1");
        assert_eq!(read.auth.as_deref(), Some("tok"));
        let write = (app_workload(AppKind::Write, "https://x", users.clone()).generator)(&mut rng);
        let body: Value = serde_json::from_str(write.body.as_deref().expect("a body")).expect("JSON");
        assert!(body["values"][0]["value"].is_number());
        let me = (app_workload(AppKind::MeResources, "https://x", users).generator)(&mut rng);
        assert_eq!(me.url, "https://x/v2/me/resources");
    }
}
